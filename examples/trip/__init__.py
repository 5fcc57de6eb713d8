"""A trip booking on the saga engine: a flight, a hotel and a car, then the payment as the
pivot; a refusal undoes the bookings in reverse order. `checkout-saga trip book` starts one."""
