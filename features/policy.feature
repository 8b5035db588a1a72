@shop
Feature: Two REST APIs sharing one database
  The talk's second demo, in namespace shop: the orders and inventory APIs both use one db (a tiny
  key-value server on TCP 7000); a shopper calls both APIs. A policy then lets only the two APIs reach
  the db, and only on its protocol port. Each matrix is asserted by real connections from inside the
  pods and by the observer's flows for those connections.

  Background:
    Given the shop demo is running without policies

  Scenario: Only the APIs may reach the database
    Then the shop reachability is:
      | from \ to | orders  | inventory | db      |
      | shopper   | yes     | yes       | yes     |
      | orders    | ignored | yes       | yes     |
      | inventory | yes     | ignored   | yes     |
    And the reachability matches the policies
    When I apply the shop policy "db-only-apis"
    Then the shop reachability is:
      | from \ to | orders  | inventory | db      |
      | shopper   | yes     | yes       | no      |
      | orders    | ignored | yes       | yes     |
      | inventory | yes     | ignored   | yes     |
    And the reachability matches the policies
    And the inventory holds 5 "widget"
    And an order for 3 "widget" is accepted
    And an order for 3 "widget" is refused
