"""Host operations: one module per remote concept, its script's environment and its output's parser side by side."""
