"""The broadcast notifications demo: a backend pushes, every open page shows it."""
