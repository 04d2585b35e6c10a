SELECT count(*) FROM events WHERE day = '{{ ds }}';
