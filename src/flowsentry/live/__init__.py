"""Live detection from pegasus-monitord's event stream (`flowsentry listen`).

`events`: monitord's events -> job records, as the stampede reader derives them;
`state`: what survives a crash (SQLite); `sinks`: results, alerts, Prefect events,
webhooks; `listener`: the AMQP consumer that ties them together.
"""
