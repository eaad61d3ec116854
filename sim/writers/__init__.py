"""Log writers of the synthetic fleet: MCAP / ROS 2 and the PhysicalAI-AV layout."""
