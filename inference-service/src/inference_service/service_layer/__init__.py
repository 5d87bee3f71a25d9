"""The use cases: what the API, the Kafka loops and the sweeper ask for, against the ports."""
