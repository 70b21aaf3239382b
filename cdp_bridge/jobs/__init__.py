"""The queue workers and the jobs they run: each job empties one leased queue of the
store (the delivery inbox, the buy outbox); the state says which jobs an app has."""
