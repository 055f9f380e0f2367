def validate_model(model, graph):
    pass
