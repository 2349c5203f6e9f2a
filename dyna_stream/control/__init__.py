"""Control: power meters, operating-point profiles and the budget controller (DESIGN §5)."""
