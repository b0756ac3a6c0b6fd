"""The neuron explorer: a local web app over one run (``and-toolkit explore RUN``).

Search and browse every neuron, listen to its top / bottom clips beside their log-mel
spectrograms and captions, read its summaries, calibration and concepts, and rate each method's
description as in the paper's human study (ratings go to ``<run>/ratings.parquet``; Table 3 uses
them). Modules: ``data`` (what is read from the run, once), ``queries`` (pure search / sort /
paging), ``detail`` (one neuron's page data), ``clips`` (clip id -> audio / spectrogram through
the probe table only), ``ratings`` (checked, locked, atomic appends), ``rating_mode`` (the
seeded walk), ``app`` (Starlette routes and Jinja pages), ``serve`` (uvicorn).
"""
