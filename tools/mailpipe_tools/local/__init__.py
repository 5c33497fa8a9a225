"""The local runtime: moto in server mode, resources from template.yaml, Lambda's SQS poller."""
