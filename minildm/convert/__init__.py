"""Converters that load weights of independent implementations (diffusers, transformers) into minildm modules."""
