"""Bulk export: a FHIR-style bulk export as a finejobs step pipeline, after Smile CDR / HAPI FHIR Batch2's
``$export`` job (fetch resource ids -> expand them into resources -> write NDJSON files -> a report)."""
