"""Workers: take tasks of the flows installed on them and run their graphs with the executor."""
