"""Using a finished run outside training: export folders others can load (bundle.py, card.py), in-process
prediction on posts (predictor.py), and the HTTP service with its page (app.py, batcher.py, requests.py).

A component layer beside training (it may import config, data, models, evaluation, objectives and training's
checkpoint reader); recipes/export.py and recipes/serve.py wire it."""
