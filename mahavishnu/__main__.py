from mahavishnu.cli import app

app()
