"""The DICOM side of a study's path, one folder per stage: receive, assemble, route, dispatch, deliver."""
