"""The background loops (entry points like the API): each calls one use case, again and again."""
