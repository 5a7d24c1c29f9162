"""The parts of ``bench/gpu_check.py``: time caps (:mod:`.caps`), the run and its report file (:mod:`.check`,
:mod:`.report`), entry points run one after another or several at once (:mod:`.stages`), and one module per
section (:mod:`.smoke` with :mod:`.smoke_mq`, :mod:`.supernet`, :mod:`.abs_round`, :mod:`.train_data`, :mod:`.bf16`,
:mod:`.nb201_tau`).

Imported as ``gpucheck`` with ``bench/`` on ``sys.path``, as every bench script is run (``python bench/NAME.py``).
"""
