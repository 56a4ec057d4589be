"""Datasets for captioning: the embedded shapes dataset, COCO, the vocabulary and batches."""
