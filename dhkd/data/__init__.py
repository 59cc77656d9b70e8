"""Datasets in MVTec AD layout: index, image loading, checks and a synthetic generator."""

from dhkd.data.check import CheckReport, Problem, check_dataset, format_report
from dhkd.data.images import Split, load_image, load_mask, load_split
from dhkd.data.index import (
    IMAGE_SUFFIXES,
    MVTEC_CATEGORIES,
    CategoryIndex,
    Sample,
    index_category,
    list_categories,
)
from dhkd.data.synth import make_synthetic_dataset

__all__ = [
    "IMAGE_SUFFIXES",
    "MVTEC_CATEGORIES",
    "CategoryIndex",
    "CheckReport",
    "Problem",
    "Sample",
    "Split",
    "check_dataset",
    "format_report",
    "index_category",
    "list_categories",
    "load_image",
    "load_mask",
    "load_split",
    "make_synthetic_dataset",
]
