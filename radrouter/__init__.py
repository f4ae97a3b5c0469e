"""radrouter: a DICOM node that routes studies to AI pipelines and returns standard results to PACS."""

__version__ = "0.1.0"
