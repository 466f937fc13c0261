"""cloudfree:checkdependencies - which Python packages CloudFree finds, which are missing, and how to install them.

It never installs anything: headless users run the command it prints (or the command-line check with
``--install``); in QGIS the *CloudFree dependencies* dialog installs with one click.
"""

from __future__ import annotations

import json
import os

from qgis.core import (
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
)

from .. import dependencies
from .base import CloudFreeAlgorithm

TORCH_BUILDS = ("auto", "cpu", "cuda")


class CheckDependenciesAlgorithm(CloudFreeAlgorithm):
    OPTIONAL = "OPTIONAL"
    TORCH = "TORCH"
    TARGET = "TARGET"
    INSTALLED = "INSTALLED"
    MISSING = "MISSING"
    MISSING_COUNT = "MISSING_COUNT"
    FOLDER = "FOLDER"
    COMMAND = "COMMAND"
    CLI_COMMAND = "CLI_COMMAND"

    NAME = "checkdependencies"
    DISPLAY_NAME = "Check Python dependencies"
    GROUP = "Tools"
    REQUIRES = ()
    HELP = (
        "<p>Lists the Python packages CloudFree needs besides QGIS (torch, safetensors, scikit-image, OpenCV, "
        "ONNX Runtime, ONNX, ukis-csmask; scikit-learn, dask and distributed are optional) with the version "
        "each needs and the version found, and gives the command that installs the missing ones. "
        "<b>It installs nothing</b>: in QGIS use <i>Raster ▸ CloudFree ▸ CloudFree dependencies…</i>; headless, "
        "run the command it prints.</p>"
        "<p>Missing packages go to a folder of CloudFree's own, one per QGIS install and Python version "
        "(<tt>&lt;QGIS user folder&gt;/cloudfree-python/py3.X-&lt;key&gt;</tt>), never into QGIS's Python; the "
        "plugin adds it to the end of Python's path when QGIS starts. The command pins numpy and QGIS's other "
        "compiled packages to the versions QGIS has (a constraints file written beside the folder), takes "
        "binary wheels only, and picks torch's CPU or CUDA build.</p>"
        "<p><b>Include optional packages</b>: also install scikit-learn, dask and distributed. <b>Torch build</b>: "
        "auto = CUDA when an NVIDIA GPU is present, else CPU. <b>Folder</b>: install somewhere else (add it to "
        "PYTHONPATH yourself).</p>"
        "<p>Outputs: the packages found (<i>INSTALLED</i>, JSON name: version, null when missing), the missing "
        "requirements (<i>MISSING</i>), their number (<i>MISSING_COUNT</i>), the folder (<i>FOLDER</i>), the pip "
        "command (<i>COMMAND</i>) and the command-line check that installs them (<i>CLI_COMMAND</i>).</p>"
    )

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterBoolean(self.OPTIONAL, "Include optional packages (scikit-learn, "
                                                        "dask, distributed)", False))
        self.addParameter(QgsProcessingParameterEnum(self.TORCH, "Torch build (auto = CUDA when an NVIDIA GPU is "
                                                     "present)", list(TORCH_BUILDS), defaultValue=0))
        self.addParameter(QgsProcessingParameterFile(self.TARGET, "Folder (empty = CloudFree's folder of this QGIS)",
                                                     behavior=QgsProcessingParameterFile.Folder, optional=True))
        self.addOutput(QgsProcessingOutputString(self.INSTALLED, "Packages found (JSON)"))
        self.addOutput(QgsProcessingOutputString(self.MISSING, "Missing requirements"))
        self.addOutput(QgsProcessingOutputNumber(self.MISSING_COUNT, "Number of missing packages"))
        self.addOutput(QgsProcessingOutputString(self.FOLDER, "Folder"))
        self.addOutput(QgsProcessingOutputString(self.COMMAND, "pip command"))
        self.addOutput(QgsProcessingOutputString(self.CLI_COMMAND, "Command-line check that installs"))

    def compute(self, parameters, context, feedback, progress, cancelled):
        optional = self.parameterAsBool(parameters, self.OPTIONAL, context)
        build = TORCH_BUILDS[self.parameterAsEnum(parameters, self.TORCH, context)]
        chosen = self.parameterAsFile(parameters, self.TARGET, context)
        target = chosen or str(dependencies.target_folder())
        statuses = dependencies.check(target)
        for line in dependencies.report_lines(statuses):
            feedback.pushInfo(line)
        wanted = dependencies.to_install(statuses, optional)
        results = {self.INSTALLED: json.dumps({s.package.name: s.version for s in statuses}),
                   self.MISSING: " ".join(wanted), self.MISSING_COUNT: len(wanted), self.FOLDER: target,
                   self.COMMAND: "", self.CLI_COMMAND: ""}
        feedback.pushInfo(f"CloudFree folder: {target}")
        if not wanted:
            feedback.pushInfo("Nothing to install.")
            return results
        try:
            plan = dependencies.make_plan(wanted, target=target, build=build)
        except dependencies.InstallerError as exc:
            feedback.reportError(str(exc))
            return results
        dependencies.write_constraints(plan)
        cli = [*plan.python, os.path.abspath(dependencies.__file__), "--install", "--torch", build,
               *(["--optional"] if optional else []), *(["--target", target] if chosen else [])]
        results[self.COMMAND] = plan.display()
        results[self.CLI_COMMAND] = dependencies.command_line(cli)
        feedback.pushInfo(f"Missing: {results[self.MISSING]}. Nothing was installed. To install them, run:\n"
                          f"  {results[self.CLI_COMMAND]}\nor the pip command:\n  {results[self.COMMAND]}")
        problem = dependencies.python_problem()
        if problem:
            feedback.pushWarning(problem)
        return results
