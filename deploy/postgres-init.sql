-- Unleash keeps its data in its own database on the same PostgreSQL.
CREATE DATABASE unleash OWNER shop;
