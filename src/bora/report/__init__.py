"""From result files to the paper's tables, figures and claims: a pure function of the ``result.json`` files.

Layers, each importing only the ones above it (rendering a table or a summary needs pandas, not torch):
``paper`` (the paper's numbers) and ``aggregate`` (result files -> frames) -> ``specs`` (table layouts, which runs
a table takes) -> ``tables`` (comparison frames) -> ``render`` (Markdown / LaTeX) -> ``claims`` -> ``figures``
(matplotlib; adapters for Figure 4) -> ``cli`` (``bora tables``).
"""
