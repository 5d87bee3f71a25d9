"""A Streamlit page over the public job API: choose a model, give an image, see the answer."""
