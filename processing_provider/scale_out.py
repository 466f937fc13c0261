"""The SCHEDULER parameter of the heavy algorithms: where their tiles run (here, or on a Dask cluster).

One definition, one reader, one help paragraph, so removeclouds, fusedates, detectclouds and segment
each add it with two lines: ``self.addParameter(scheduler_parameter())`` and
``with scaled_out(self, parameters, context, feedback) as executor:`` around the engine call, which
takes ``executor`` in its options. Dask is imported only when a scheduler is given.
"""

from __future__ import annotations

from contextlib import contextmanager

from qgis.core import QgsProcessingParameterDefinition, QgsProcessingParameterString

SCHEDULER = "SCHEDULER"

SCHEDULER_HELP = (
    "<p><b>Scheduler</b> (advanced): where the tiles run. Empty = here, in this process (the default). "
    "<code>local:N</code> = N worker processes on this machine (a Dask LocalCluster, started and stopped by "
    "the run; one per CPU core is the natural choice). <code>tcp://host:8786</code> = a Dask cluster that is "
    "already running (<code>dask scheduler</code> and <code>dask worker</code> on other machines, with the "
    "plugin on their Python path and the inputs on storage they all reach). Needs the Python packages dask "
    "and distributed. The output is the same wherever it runs.</p>"
)


def scheduler_parameter() -> QgsProcessingParameterString:
    parameter = QgsProcessingParameterString(SCHEDULER, "Scheduler (empty = here; local:N = N worker processes; "
                                             "tcp://host:port = a Dask cluster)", "", optional=True)
    parameter.setFlags(parameter.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
    return parameter


@contextmanager
def scaled_out(alg, parameters, context, feedback):
    """The executor SCHEDULER asks for (None = here), logged; a local cluster is stopped when the block ends."""
    from ..models.tiling import describe_executor, open_executor

    spec = (alg.parameterAsString(parameters, SCHEDULER, context) or "").strip()
    with open_executor(spec) as executor:
        feedback.pushInfo(f"Executor: {describe_executor(executor)}")
        yield executor
