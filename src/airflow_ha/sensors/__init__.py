"""Smart sensors on Airflow 3.3's deferral machinery: sensors that hold no slot and poke once per target.

Design (why it is built this way, in short; each module says more):

* A smart sensor renders its templates, reduces what it waits for to a *poke context* ``(kind, target)``
  and its stable 64-bit ``hashcode`` (sha256 of canonical JSON: Python's ``hash()`` is salted per
  process, so two workers would disagree). See :mod:`.hashcode`.
* The hashcode picks one of a fixed number of *virtual shards*; the task sets ``self.queue`` to that
  virtual shard's triggerer queue and defers. Airflow stores ``ti.task.queue`` read at defer time on the
  trigger row, so only the triggerer that serves that queue runs it. Shard pods serve virtual shards
  ``v`` with ``v % pods == ordinal``; changing the pod count re-deals queues, never the sensors' rows.
  See :mod:`.shards`.
* Every trigger of one shard process registers with that process's :class:`.hub.PokeHub`. The hub keeps
  one entry per hashcode (however many tasks wait on it) and pokes each *kind* in one batch per tick: one
  directory listing per directory for files, one SQL query per (connection, table) for job history.
  Airflow's ``BaseEventTrigger.shared_stream_key`` was not used: those triggers are queue-less
  (``supports_triggerer_queue = False``), so they could not be routed to shards, and a shared stream is
  opened from one trigger's kwargs, so it cannot batch *different* targets of one kind.
* The trigger ends a waiting task with ``TaskSuccessEvent`` (no worker round trip); a timeout resumes the
  task on a worker only to raise ``AirflowSensorTimeout`` (or skip, with ``soft_fail``) naming the target.
* Each shard writes what it poked (result, time, count) to a status store; ``airflow-ha sensors list``
  and the UI plugin join it with the trigger rows of waiting tasks. See :mod:`.listing`.
"""
