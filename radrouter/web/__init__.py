"""The one web app: reading list, dashboard, monitoring, JSON API, DICOMweb and /metrics."""
