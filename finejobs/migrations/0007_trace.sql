-- finejobs 0007: the enqueuer's trace context on each job (finejobs.tracing, off by default).
--
-- trace: the W3C trace context carrier of the span that enqueued the job, {"traceparent": "00-...-...-01",
-- "tracestate": "..."} as the OpenTelemetry propagator writes it; the span of each execution links to it, so
-- a trace viewer leads from the request that enqueued a job to every attempt that ran it. NULL when tracing
-- is off (and for jobs made by schedules). A shard move copies it with the job. Nothing reads it for
-- correctness: a value finejobs cannot read is ignored, never an error.
--
-- A nullable column without a default: adding it rewrites nothing, on any table size.

ALTER TABLE finejobs_jobs ADD COLUMN trace jsonb;
