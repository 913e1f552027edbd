"""ANSI/NIST-ITL 1-2011 transactions for a booking: Type-1, Type-2, Type-9, Type-14 with WSQ."""
