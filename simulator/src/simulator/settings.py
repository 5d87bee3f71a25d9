"""The simulator's settings: the shared ones (Kafka, topics, assets) plus where the API is."""

from pydantic import SecretStr

from inference_common.settings import CommonSettings

DEFAULT_API_URL = "http://127.0.0.1:8080/api/v1/inference"


class SimulatorSettings(CommonSettings):
    """`API_URL` and `API_KEY` from the environment; the command line overrides both."""

    api_url: str = DEFAULT_API_URL
    api_key: SecretStr | None = None
