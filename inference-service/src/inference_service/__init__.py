"""The job API: OpenAPI-first (Connexion 3), jobs in MongoDB, CloudEvents to Kafka through an
outbox, results folded back."""
