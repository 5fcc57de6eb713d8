"""A trip booking on the saga engine: a flight, a hotel and a car, then the payment as the
pivot; a refusal undoes the bookings in reverse order. Built on the engine's public API only:
`python -m examples.trip worker` runs its worker, `python -m examples.trip book` books one."""
