"""The synthetic fleet: world, scenarios, expert driver, cameras, log writers, closed loop."""
