"""fabdeploy's own fabfile: the root namespace of the `tasks` package, nothing else."""

from tasks import ns

__all__ = ["ns"]
