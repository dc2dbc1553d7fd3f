"""``chiffon-llm``: route each request to the right model across llama.cpp, Ollama and Claude."""
