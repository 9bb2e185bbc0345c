"""Integrations of finejobs with frameworks: ``finejobs.contrib.django`` (the ``finejobs[django]`` extra).

Each is a surface like the CLI and the console: a thin view over the operations API (finejobs.admin) and the
queue, never over the store."""
