//! A member's own record of the privacy it spent (see [`GroupLedger`]).
