"""Bulk import: a CSV of insurance claims becomes one durable review job per claim, in a group.

``python -m examples.bulk_import --claims 1000000`` (needs ``pip install 'finejobs[examples]'`` for tqdm):
generate the CSV if missing, import it with ``finejobs.importing.import_jobs`` (COPY, every row validated),
process the claims with a bounded worker, and report how "interactive" queries of another process fared
meanwhile. See demo.py. Measured on 2 shared cores: the import at about 24,000 claims/s, the reviews (one row
written to the app's table each) at about 1,700/s with one worker process at concurrency 32, so the default
million takes about 45 s to import and 10 minutes to review; ``--claims 50000`` is a quicker look.
"""
