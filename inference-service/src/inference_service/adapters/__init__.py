"""Adapters: the ports implemented for MongoDB (and FerretDB 1.x), Kafka and image stores.

The only modules of the job service that import pymongo or confluent_kafka.
"""
