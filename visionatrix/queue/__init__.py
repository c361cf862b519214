"""The task queue: ``manager.TaskQueue`` (every query), ``claim`` (the claim statement per dialect), ``models``
(the records that cross the boundary) and ``events`` (in-process pub/sub). See README.md in this folder."""
