"""Receive: the SCP that modalities and PACS send to; every instance stored and indexed before Success."""
