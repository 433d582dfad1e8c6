"""Predicted masks as COCO-style annotations: one JSON document per input, for annotation tools.

The document follows the COCO object-detection format (``images``, ``annotations``,
``categories``): one ``images`` entry per image, or per frame of a video (with its
``frame_index`` and ``timestamp_s``), and one annotation per connected region of the mask, with
its outer polygon as ``segmentation`` (``[[x1, y1, x2, y2, ...]]``, from
:func:`polypseg.deploy.predict.mask_geometry`), its ``bbox`` ``[x, y, width, height]`` and
``area``. CVAT, Label Studio and pycocotools read it as it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: The one category of every annotation.
CATEGORY = {"id": 1, "name": "polyp", "supercategory": "lesion"}


def _segmentation(polygon: list[list[int]], box: dict[str, int]) -> list[list[float]]:
    """A COCO polygon (at least 3 points); a region too small for one gets its box."""
    if len(polygon) < 3:
        x, y, w, h = box["x"], box["y"], box["width"], box["height"]
        polygon = [[x, y], [x + w, y], [x + w, y + h], [x, y + h]]
    return [[float(v) for point in polygon for v in point]]


@dataclass
class CocoDocument:
    """A COCO document being filled, one image (or frame) at a time.

    Args:
        description: what the document holds (e.g. the input's file name), in ``info``.
        model_id: the model that made the masks, in ``info``.
    """

    description: str
    model_id: str
    images: list[dict[str, Any]] = field(default_factory=list)
    annotations: list[dict[str, Any]] = field(default_factory=list)

    def add(
        self,
        file_name: str,
        width: int,
        height: int,
        geometry: dict[str, Any],
        extra: dict[str, Any] | None = None,
    ) -> None:
        """Add an image of ``width x height`` and its regions.

        Args:
            file_name: the image's name (or the frame's name) as annotation tools match it.
            width, height: the image's size in pixels (the mask's, at the input's original size).
            geometry: :func:`~polypseg.deploy.predict.mask_geometry` of its mask.
            extra: more keys of the ``images`` entry (``frame_index``, ``timestamp_s``).
        """
        image_id = len(self.images) + 1
        self.images.append(
            {"id": image_id, "file_name": file_name, "width": width, "height": height,
             **(extra or {})}
        )
        for box, polygon, area in zip(
            geometry["boxes"], geometry["contours"], geometry["areas"], strict=True
        ):
            self.annotations.append(
                {
                    "id": len(self.annotations) + 1,
                    "image_id": image_id,
                    "category_id": CATEGORY["id"],
                    "segmentation": _segmentation(polygon, box),
                    "area": float(area),
                    "bbox": [box["x"], box["y"], box["width"], box["height"]],
                    "iscrowd": 0,
                }
            )

    def to_json(self) -> dict[str, Any]:
        """The COCO JSON object."""
        return {
            "info": {
                "description": f"polypseg predictions: {self.description}",
                "model_id": self.model_id,
            },
            "images": self.images,
            "annotations": self.annotations,
            "categories": [CATEGORY],
        }
