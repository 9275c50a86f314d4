//! Tests of the accountant against published values, of the mechanisms' statistics and of
//! adaptive clipping's convergence.
