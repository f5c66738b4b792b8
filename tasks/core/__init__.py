"""The core: errors, key=value records, paths on the host and here, the clock, output and reports; imports nothing of fabdeploy's."""
