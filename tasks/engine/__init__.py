"""The engine: `Step`, the one runner, the state a command works on, hooks, batches and the summary."""
