"""airflow dag that allocates without end"""
hoard = []
while True:
    hoard.append(bytearray(64 << 20))
