"""``chiffon-voice``: speech to text (faster-whisper) and text to speech (Kokoro), served by the hosts' daemons."""
