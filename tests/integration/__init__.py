"""Virtual-LAN integration tests of real `bjgrid` processes."""
