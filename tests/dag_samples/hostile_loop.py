"""airflow dag that switches off Airflow's import timeout and never finishes"""
import signal

signal.signal(signal.SIGALRM, signal.SIG_IGN)
signal.alarm(0)
while True:
    pass
