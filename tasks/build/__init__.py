"""The local build: source and git, the release archive, packages and wheels per tag set, the app's tests here."""
