"""The steps of the deploy, the rollback, ``upload.release`` and setup, and their declared lists."""
