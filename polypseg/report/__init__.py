"""``polypseg report``: one self-contained HTML page of a study (runs, sweeps, bench results).

:func:`polypseg.report.build.build_report` writes it;
:func:`polypseg.report.build.write_quality_report` is what ``polypseg bench quality`` calls
after its tables. Modules: :mod:`~polypseg.report.inputs` (what the paths hold),
:mod:`~polypseg.report.summary` (the numbers), :mod:`~polypseg.report.gallery` (pictures
computed with each model), :mod:`~polypseg.report.figures` (plots as SVG data URIs),
:mod:`~polypseg.report.provenance`, :mod:`~polypseg.report.html` (markup) and
:mod:`~polypseg.report.build` (the page). Importing this package loads neither torch nor
matplotlib.
"""
