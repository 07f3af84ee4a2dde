"""End-to-end swarms. ``PLANT_REGRESSION`` is set by ``pytest --plant-regression`` (conftest.py): the nightly
gate's negative control, a real regression planted in one topology (see ``tests.e2e.test_local_swarm.planted``)."""

PLANT_REGRESSION = False
