"""Deployment: export a trained model to a plain, dependency-light form, predict, and serve it.

* :mod:`~polypseg.deploy.export` freezes a run's model (``model.export()``: expanded filters
  in plain ``nn.Conv2d``) into TorchScript, ONNX or safetensors, checks parity, and writes an
  export folder (``model.*`` + ``export.json`` + ``README.md``) atomically;
  :mod:`~polypseg.deploy.card` gives it its model card and identity.
* :mod:`~polypseg.deploy.bundle` opens an export folder, or a run folder, as the one
  opened-model type :class:`~polypseg.opened.OpenedModel` (model + preprocessing metadata),
  with a torch or an onnxruntime backend.
* :mod:`~polypseg.deploy.predict` segments images and video frames at their original size;
  :mod:`~polypseg.deploy.batch` writes what ``polypseg predict`` makes of them (masks,
  overlays, tables), with :mod:`~polypseg.deploy.video` (overlay videos, per-video
  summaries) and :mod:`~polypseg.deploy.coco` (COCO polygons).
* :mod:`~polypseg.deploy.imageio` decodes untrusted uploads with size, pixel and format limits.
* :mod:`~polypseg.deploy.memory` bounds the memory of concurrent requests (a byte budget).
* :mod:`~polypseg.deploy.server` is the FastAPI app factory behind ``polypseg serve``.
* :mod:`~polypseg.deploy.http` runs it under uvicorn with deadlines and a connection cap.
"""
